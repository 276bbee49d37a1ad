"""The conductor: launches and watches agents, drives the protocol, records the run."""
