"""The SQL of primetric_harvest: every statement named (`-- name: x`), migrations in migrations/.

This folder is the package `primetric_harvest.sql` (pyproject.toml maps it), so the code finds it with
importlib.resources in a checkout and in an installed deployment alike.
"""
