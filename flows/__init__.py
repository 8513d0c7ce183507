"""Prefect flows composing the stage functions of tasks/. No torch import here."""
