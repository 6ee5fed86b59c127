# neon-migrate's Make targets: thin aliases of its commands (`neon-migrate --help`).
# Include it from your Makefile (`include neon-migrate.mk`). Make turns every failure into
# its own exit 2: scripts and CI that branch on exit codes call `neon-migrate` itself.
NEON_MIGRATE ?= neon-migrate
NEON_MIGRATE_DEPS ?=

.PHONY: migrate status history check sql revision downgrade verify db-up db-down serve

migrate: $(NEON_MIGRATE_DEPS) ## upgrade to head (direct endpoint), then verify both endpoints
	@$(NEON_MIGRATE) migrate $(args)

status: $(NEON_MIGRATE_DEPS) ## every revision: applied (when, by whom) or pending; edited files
	@$(NEON_MIGRATE) status $(args)

history: $(NEON_MIGRATE_DEPS) ## the revisions in the scripts (no database needed)
	@$(NEON_MIGRATE) history $(args)

check: $(NEON_MIGRATE_DEPS) ## pre-deploy check: is this safe to ship? (changes nothing; args="--json")
	@$(NEON_MIGRATE) check $(args)

sql: $(NEON_MIGRATE_DEPS) ## print the upgrade SQL (offline; args="--pending" from the database's revision)
	@$(NEON_MIGRATE) sql $(args)

revision: $(NEON_MIGRATE_DEPS) ## write a revision from the models: make revision m="add invoices"
	@test -n "$(m)" || { echo 'error: give a message: make revision m="add invoices"' >&2; exit 2; }
	@$(NEON_MIGRATE) revision -m "$(m)" $(args)

downgrade: $(NEON_MIGRATE_DEPS) ## revert one revision (or: make downgrade r=<rev>)
	@$(NEON_MIGRATE) downgrade $(or $(r),-1)

verify: $(NEON_MIGRATE_DEPS) ## check both endpoints: reachable, TLS, at head
	@$(NEON_MIGRATE) verify $(args)

db-up: $(NEON_MIGRATE_DEPS) ## start (or reuse) the local twin: PostgreSQL and PgBouncer
	@$(NEON_MIGRATE) db-up

db-down: $(NEON_MIGRATE_DEPS) ## stop the local twin
	@$(NEON_MIGRATE) db-down

serve: $(NEON_MIGRATE_DEPS) ## run the app (uvicorn), on the local twin when no URL is set
	@$(NEON_MIGRATE) serve $(args)
