"""Data: one schema for medical QA, instruction and preference data, and the sources that fill it."""
