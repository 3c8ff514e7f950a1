"""Operations: REST API, health, metrics, call detail records, admission control, logs and statistics."""
