"""Readers for real graph formats, synthetic generators and splits."""
