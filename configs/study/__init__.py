"""The study of issue 25 (docs/study.md): the seeds' questions at laptop scale. Config files compose
configs/experiment1/onfly.py and configs/experiment2/onfly.py; `cells.py` lists the study's cells
for `python -m launch.study`."""
