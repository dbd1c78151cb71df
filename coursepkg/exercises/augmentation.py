"""Checks for the coding exercises of chapter 2."""

from __future__ import annotations

from ._check import CheckResult, call_student, hint, passed  # noqa: F401

__all__: list[str] = []
