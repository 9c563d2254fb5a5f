"""Logic that spans resources: views, itineraries, exports."""
