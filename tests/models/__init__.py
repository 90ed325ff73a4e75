"""Tests of microexpr.models."""
