"""Primetric ⇄ Harvest sync: Harvest time entries become Primetric work logs."""
