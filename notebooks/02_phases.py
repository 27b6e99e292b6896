# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Loss-landscape metrics and phases of a zoo
#
# One heatmap per metric over the load × temperature grid (seed means), with the phase
# boundaries drawn on top, in three figures as the paper's Figure 3 groups them (the phases with
# test accuracy and train loss, the loss-landscape metrics, the downstream results; its Figures
# 6–17 per zoo). Then the phase map in text, the thresholds and how the map moves when each
# threshold moves by ±25 %, and, where several epochs were measured, the map over training.

# %% tags=["parameters"]
zoo = "digits-resnet18"
profile = "mini"
root = "data/zoos"
downloads = ""  # the book sets it: the folder of this zoo's downloads (phasezoo.publish.book)

# %% tags=["remove-input"]
if downloads:  # the zoo's member table and exports, written by `phasezoo book`
    from IPython.display import HTML, display

    from phasezoo.publish.book import downloads_html

    display(HTML(downloads_html(downloads)))

# %%
import matplotlib.pyplot as plt
from IPython.display import Markdown, display

from phasezoo.analysis.plots import zoo_phase_figures
from phasezoo.analysis.report import phase_report
from phasezoo.spec import load_spec

spec = load_spec(zoo)
for title, fig in zoo_phase_figures(spec, profile, root):
    display(Markdown(f"### {title}"), fig)
    plt.close(fig)  # shown once, here: not again at the end of the cell

# %%
print(phase_report(spec, profile, root))

# %% [markdown]
# ## The phase map over training
#
# Where the profile measures its metrics at several epochs (`metrics: {epochs: [...]}` in the
# zoo's YAML, or `phasezoo metrics ZOO --epochs 10,20,last`), the map is drawn at each of them.
# Top row: every epoch classified with the final epoch's thresholds, so that a cell changes
# colour only because its own measurements changed. Bottom row: each epoch's own calibration
# (its thresholds split that epoch's grid; an early grid with no fitted model still has
# "fitted" cells under it). The table counts the cells per phase both ways; `moved` is the
# number of cells whose label (final thresholds) differs from the final map's.

# %%
from phasezoo.analysis.history import phase_history, phase_history_summary
from phasezoo.analysis.plots import phase_history_plot
from phasezoo.landscape.runner import measured_epochs

epochs = measured_epochs(spec, profile, root)
if len(epochs) > 1:
    history = phase_history(spec, profile, root)
    fig = phase_history_plot(history, title=f"{spec.name}/{profile}: the phase map over training")
    plt.show()
    display(phase_history_summary(history).set_index("epoch"))
else:
    ckpts = [e for e in spec.profile(profile).training.checkpoint_epochs if 0 < e < max(epochs, default=0)]
    hint = f"{ckpts[len(ckpts) // 2]},last" if ckpts else "last"
    display(Markdown(f"The metrics of {spec.name}/{profile} were measured at epoch "
                     f"{', '.join(map(str, epochs)) or '(none)'} only; "
                     f"`phasezoo metrics {spec.name} -p {profile} --epochs {hint}` adds epochs."))
