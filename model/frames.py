"""Conventions shared by the networks that read Atari frames (the actor-critic, the DBC pixel policies)."""

FRAME_DIFF_GAIN = 4.0
"""Scale of the difference of consecutive frames fed beside them: the difference is sparse (the
one-pixel ball, the paddle's edges), so it is scaled up towards the frames' [-1, 1] range at
initialisation."""
