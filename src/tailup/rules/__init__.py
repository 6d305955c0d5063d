"""tailup's decisions, as pure functions: no await, no clock, no uuid, no os.

Every rule the daemon applies to a file (is its writer gone, what record is it, what to do with it
now, may the after-upload action run) reads here top to bottom; the supervisor gathers the facts
they ask for and carries out what they return.
"""
