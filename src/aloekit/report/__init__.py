"""The run report and every model card.

Gathering (numbers in, typed document out): ``sections`` and ``stage_sections`` build a ``document.Report`` from
the run's summary, with the tables of ``tables`` and ``safety_tables``, the sentences of ``findings`` and
``claims``, the risks of ``risks`` and every number written by ``numbers``. Rendering (document in, text out):
``html`` and ``markdown`` through the Jinja2 templates of ``templates/`` (``templating`` holds the environments);
``charts`` draws the figures. ``card`` writes every model card (final model, SFT, DPO, merge).
"""
