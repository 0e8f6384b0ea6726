"""Chaos scenarios: a timeline of faults and a load profile, run against the runtime in virtual
time (or real time over HTTP), with a report of what held and what did not."""

from runtime.scenario.format import Scenario, ScenarioError, load_scenario, parse_scenario

__all__ = ["Scenario", "ScenarioError", "load_scenario", "parse_scenario"]
