"""Assets grouped by pipeline stage, with the checks that guard them."""
