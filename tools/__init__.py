"""The repository's command-line tools, run from the repository root as ``python -m tools.<name>``.

tools/common.py holds what several of them share; tools/grading/ is the grader behind
``python -m tools.grade``.
"""
