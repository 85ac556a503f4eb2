"""Distillation API: the :class:`Distiller`, loss terms, published recipes, the teacher cache and the
comparison runner behind ``gkdfast distill``.

Example (a few seconds on a CPU):
    >>> import torch, gkdfast
    >>> from gkdfast.distill import Distiller, terms, recipes
    >>> data = gkdfast.data.csbm(num_nodes=300, seed=0)
    >>> teacher = gkdfast.nn.SAGE(data.num_features, 32, data.num_classes)
    >>> _ = Distiller(teacher, [terms.CrossEntropy(1.0)], epochs=20).fit(data)   # train the teacher
    >>> student = gkdfast.nn.MLP(data.num_features, 32, data.num_classes)
    >>> d = Distiller(student, [terms.CrossEntropy(0.1), terms.LogitKD(0.9, temperature=4)],
    ...               teacher=teacher, epochs=5)        # checkpoint_dir=, cache_dir= make it resumable
    >>> 0.0 <= d.fit(data).best_val_acc <= 1.0
    True
    >>> trained = recipes.get("glnn").fit(lambda f: gkdfast.nn.MLP(f, 32, data.num_classes), data, teacher,
    ...                                   epochs=3)
    >>> type(trained.model).__name__
    'MLP'
"""
from gkdfast.distill import recipes, terms
from gkdfast.distill.distiller import Distiller, FitResult, StopTraining, accuracy
from gkdfast.distill.positional import position_features, random_walks
from gkdfast.distill.recipes import Recipe, Trained
from gkdfast.distill.teacher_cache import TeacherOutputs, teacher_outputs

__all__ = ["Distiller", "FitResult", "StopTraining", "accuracy", "terms", "recipes", "Recipe", "Trained",
           "TeacherOutputs", "teacher_outputs", "position_features", "random_walks"]
