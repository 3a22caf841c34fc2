"""Tasks: what a recipe trains on (episodes, what the learner is told, objective, evaluation).
A recipe picks one with ``task: <name>``; adding a task is a module and an entry here."""
from metafwp.tasks.base import Scores, Task, autocast, confidence_interval, evaluate_episodes
from metafwp.tasks.few_shot import FewShotTask

TASKS: dict[str, type[Task]] = {FewShotTask.name: FewShotTask}

__all__ = ["TASKS", "FewShotTask", "Scores", "Task", "autocast", "confidence_interval", "evaluate_episodes"]
