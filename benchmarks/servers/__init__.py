"""The servers the benchmarks start: our echo assistant and its Python peers."""
