"""Sync protocol v1: the rules both sides share, and the offline field client."""
