"""Tests of rvos.ops: multi-scale deformable attention."""
