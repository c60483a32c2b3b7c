"""The three-lab demo behind ``make demo``: a real network through a real breach and pause.

The story it tells is the argument for evaluation networks, on a capability anyone can
read: two-digit addition stands in for a dangerous capability. A sensitive eval (the
log-probability of the correct answer) warns first; the trend of exact answers over
training compute forecasts the crossing; then one lab's model really does answer more
than half of the additions right, and the network pauses on that plain number.

Nothing here is scripted: three labs each train their own tiny GPT-2 on CPU, their
checkpoints are scored by the standardized eval runner, the signed results travel between
three real nodes (separate ``tripwire serve`` processes on 127.0.0.1), every node applies the
shared policy, and the pause happens only if a model really crosses the threshold. Each
lab's training loop runs under the Tripwire training gate and halts when the network is
paused. The demo then renders the report and verifies its evidence offline.

The homes it leaves under ``--workdir`` are ordinary node homes: ``tripwire serve --home``,
``status``, ``report`` and ``verify`` work on them afterwards.

The package, one job a module: :mod:`~node.demo.story` tells the network's entries as
the story and reads its milestones back; :mod:`~node.demo.labs` trains each lab under its
gate; :mod:`~node.demo.plan_act` plays the fourth act (resume, a training plan, its stop
point); :mod:`~node.demo.summary` shows what happened; :mod:`~node.demo.run` runs it all.
It calls the node and reports APIs, never the CLI.
"""

from node.demo.labs import DEFAULT_PLAN, LabPlan, LabState
from node.demo.plan_act import PlanAct
from node.demo.run import DEMO_POLICY, DEMO_SUITE, MARKER, VOTE_RULES, DemoError, prepare_workdir, run_demo
from node.demo.story import ACCURACY, ACCURACY_RULE, LOGPROB, LOGPROB_RULE, Milestone, read_story
from node.demo.summary import DemoResult, print_summary, tripwire_command, warning_lead

__all__ = [
    "ACCURACY",
    "ACCURACY_RULE",
    "DEFAULT_PLAN",
    "DEMO_POLICY",
    "DEMO_SUITE",
    "LOGPROB",
    "LOGPROB_RULE",
    "MARKER",
    "VOTE_RULES",
    "DemoError",
    "DemoResult",
    "LabPlan",
    "LabState",
    "Milestone",
    "PlanAct",
    "prepare_workdir",
    "print_summary",
    "read_story",
    "run_demo",
    "tripwire_command",
    "warning_lead",
]
