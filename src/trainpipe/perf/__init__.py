"""Performance accounting: FLOPs, device peaks, throughput, resource estimates."""
