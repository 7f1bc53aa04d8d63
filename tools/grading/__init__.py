"""The grader behind ``python -m tools.grade``, one module per step.

- model.py: the data passed between the steps: Submission, Reference, GradingLimits, Batch;
- collect.py: the submissions folder -> one Submission per student, with a safe id;
- reference.py: the course secret, the assignment's release generated once by nbgrader, verdicts;
- repair.py: a submitted notebook's cells matched and put back in the release's order;
- worker.py: one notebook run in the sandbox, hidden tests swapped for cells recording outputs;
- run_notes.py: the notes on how that run went (time limits, memory, a dead kernel);
- score.py: points from the verdicts on the recorded outputs;
- report.py: feedback pages, autograded notebooks and grades.csv;
- batch.py: every submission graded, the course's files guarded while they run.
"""
