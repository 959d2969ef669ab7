"""Operations: health, metrics, logs, rate limits, fault points."""
