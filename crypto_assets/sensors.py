"""Sensors: what reacts to events (drift, promotion, failures)."""

sensors: list = []
