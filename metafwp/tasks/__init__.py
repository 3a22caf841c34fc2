"""Tasks: what a recipe trains on (episodes, what the learner is told, objective, evaluation).
A recipe picks one with ``task: <name>``; adding a task is a module and an entry here."""
from metafwp.tasks.base import (LEARNER, GeneratorTask, Scores, StreamTask, Task, add_tallies, autocast,
                                confidence_interval, evaluate_episodes)
from metafwp.tasks.bootstrap import BootstrapTask
from metafwp.tasks.char_lm import CharLMTask
from metafwp.tasks.classification import ClassificationTask
from metafwp.tasks.code_execution import CodeExecutionTask
from metafwp.tasks.continual import ContinualTask
from metafwp.tasks.copy import CopyTask
from metafwp.tasks.expressivity import ExpressivityTask
from metafwp.tasks.few_shot import FewShotTask
from metafwp.tasks.gan import GANTask
from metafwp.tasks.irregular import IrregularRowsTask
from metafwp.tasks.listops import ListOpsTask
from metafwp.tasks.mqar import MQARTask
from metafwp.tasks.multitask import MultiTaskTask
from metafwp.tasks.regression import RegressionTask

TASKS: dict[str, type[Task]] = {task.name: task for task in (FewShotTask, RegressionTask, BootstrapTask, MultiTaskTask,
                                                              ContinualTask, ExpressivityTask, CopyTask, MQARTask,
                                                              CodeExecutionTask, ListOpsTask, IrregularRowsTask,
                                                              ClassificationTask, CharLMTask, GANTask)}

__all__ = ["LEARNER", "TASKS", "BootstrapTask", "CharLMTask", "ClassificationTask", "CodeExecutionTask",
           "ContinualTask", "CopyTask", "ExpressivityTask", "FewShotTask", "GANTask", "GeneratorTask",
           "IrregularRowsTask", "ListOpsTask", "MQARTask", "MultiTaskTask", "RegressionTask", "Scores", "StreamTask",
           "Task", "add_tallies", "autocast", "confidence_interval", "evaluate_episodes"]
