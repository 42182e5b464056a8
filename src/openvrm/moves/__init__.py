"""Moves: one profile change carried to every vendor that holds the old value."""

from openvrm.moves.service import Candidate, MovePlan, MoveRecord, MoveService, Notice

__all__ = ["Candidate", "MovePlan", "MoveRecord", "MoveService", "Notice"]
