"""The user's traffic and the fleet that serves it: reading a profile (profile.py), sizing the fleet
hour by hour with the autoscaler's lag covered (fleet.py), simulating it second by second
(simulate.py), the M/G/c queue that predicts a rate no open loop measured (queueing.py) and the
autoscaling policies that carry the plan (policies.py).

Pure numbers: what one instance sustains comes in from the measurements (deploybench.recommend).
"""
