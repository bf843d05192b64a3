"""AutoAL engine: task model, candidate strategies, AutoAL strategy search, cost-aware ranking."""
