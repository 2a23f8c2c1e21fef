"""Prices: the instance catalogue, cost per 1M inferences and capacity (catalogue.py), and which
catalogue entry this machine is (machine.py).
"""
