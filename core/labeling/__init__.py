"""Labelling unlabelled photos with the model's help.

A dataset's ``unlabeled/`` photos are offered a batch at a time, each with the
class a quick model on the frozen ImageNet embeddings suggests, so a person
mostly confirms and now and then corrects. The model is refit on every photo
labelled so far each time a batch is asked for, so its suggestions get
better batch by batch::

    from core.labeling.suggest import record_labels, suggest_next

    batch = suggest_next(root, 50)             # [Suggestion(file, suggested, confidence, ...)]
    record_labels(root, {s.file: s.suggested for s in batch})   # or a class a person chose; None excludes

On the command line: ``python -m core label --data DIR --next 50`` and
``python -m core label --data DIR --set FILE=CLASS ... --exclude FILE ...``
(core.labeling.commands).
"""
