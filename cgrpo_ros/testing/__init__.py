"""Helpers shared by the tests and the benchmarks: real node processes on a private DDS domain,
probe nodes, policy artifacts built for a check, deploy episodes. Nothing here is a mock; the
nodes never import it. Tests and benchmarks import it from here (never from each other).
"""
