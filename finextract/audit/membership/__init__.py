"""A white-box membership test for the audit: the denoising-loss gap between θ and θ'.

- :mod:`.score` — per image, the losses of θ and θ' on the same noisy inputs (K timesteps × M noise
  draws shared by both models), and the score variants built from them;
- :mod:`.calibrate` — p-values (against a reference folder of known non-members, or an empirical
  null from the candidates), BH q-values and the set-level test;
- :mod:`.evaluate` — ROC figures with bootstrap intervals, for measuring on labelled candidates;
- :mod:`.run` — the audit stage: load θ and θ', score candidates and reference, write the table.

docs/audit.md says what each answer assumes and what it measured.
"""
