"""``hpsearch bench``: training speed, sweep efficiency and search quality, beside baselines."""
