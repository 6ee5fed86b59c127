"""Watching the app's pools: statistics, leak warnings, the figures every report shares."""
