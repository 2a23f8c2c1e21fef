"""Variants in-process: build every backend, gate each against eager fp32 (parity.py, with the
stand-in rule for reduced precision on random weights in stand_in.py), score it on labelled data
(accuracy.py), time it (timing.py); verify.py runs the whole pipeline, served.py re-checks a variant
a server worker rebuilt.
"""
