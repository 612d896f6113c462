"""Kintsmesh: the change-data-capture bus of a city's integrated government data platform."""
