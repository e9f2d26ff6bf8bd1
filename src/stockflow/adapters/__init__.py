"""Third parties, each behind a small interface, built in the composition roots."""
