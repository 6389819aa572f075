"""The sweep engine: Ray Tune trials with Optuna search, the leaderboard they write, Ray itself."""
