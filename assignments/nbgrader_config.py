"""nbgrader configuration of the nst course: the course root is this folder (assignments/).

    nbgrader generate_assignment A1 --force    # run from assignments/ (tools/make_assignments.py does it)

source/<A>/ holds the instructors' notebooks with solutions and hidden tests; release/<A>/ the students'
versions, written by tools/make_assignments.py. Point values are in the table at the top of each notebook.
"""

import os

c = get_config()  # noqa: F821 - provided by nbgrader when it loads this file

c.CourseDirectory.root = os.path.dirname(os.path.abspath(__file__))

# source/<A>/hidden_tests.py holds the hidden tests (see nst.grading): never copied into release/<A>.
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback", "hidden_tests.py"]

# What replaces each solution; tools/make_assignments.py then names the exercise in the message,
# e.g. raise NotImplementedError("Exercise 3: write gram_matrix(feats) (B, C, H, W) -> (B, C, C) ...").
c.ClearSolutions.code_stub = {"python": '# YOUR CODE HERE\nraise NotImplementedError("Exercise")'}

# nbgrader's default is 30 s per cell; the optimisation cells need more. Set on both classes, since
# nbgrader's Execute redefines the trait (jupyter/nbgrader#1463, #1004).
c.ExecutePreprocessor.timeout = 300
c.Execute.timeout = 300
