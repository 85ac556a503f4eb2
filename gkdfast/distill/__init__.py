"""Distillation API: the :class:`Distiller`, loss terms, published recipes, the teacher cache and the
comparison runner behind ``gkdfast distill``.

Example:
    >>> from gkdfast.distill import Distiller, terms, recipes
    >>> d = Distiller(student, [terms.CrossEntropy(0.1), terms.LogitKD(0.9, temperature=4)],
    ...               teacher=teacher, checkpoint_dir="ckpt", cache_dir="cache")      # doctest: +SKIP
    >>> d.fit(data).best_val_acc                                                        # doctest: +SKIP
    >>> recipes.get("glnn").fit(lambda f: gkdfast.nn.MLP(f, 128, 7), data, teacher)   # doctest: +SKIP
"""
from gkdfast.distill import recipes, terms
from gkdfast.distill.distiller import Distiller, FitResult, StopTraining, accuracy
from gkdfast.distill.positional import position_features, random_walks
from gkdfast.distill.recipes import Recipe, Trained
from gkdfast.distill.teacher_cache import TeacherOutputs, teacher_outputs

__all__ = ["Distiller", "FitResult", "StopTraining", "accuracy", "terms", "recipes", "Recipe", "Trained",
           "TeacherOutputs", "teacher_outputs", "position_features", "random_walks"]
