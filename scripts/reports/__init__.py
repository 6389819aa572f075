"""What a finished sweep becomes: the best trial re-trained and tested, comparison tables, plots."""
