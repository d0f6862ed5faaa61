"""Scale from zero: the first request's wait next to the runtime's own start, and the
balancer's memory while it holds requests (issue 14)."""
