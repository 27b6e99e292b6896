# %% [markdown]
# # Loss-landscape metrics and phases of a zoo
#
# One heatmap per metric over the load × temperature grid (seed means), with the phase
# boundaries drawn on top (the paper's Figures 3 and 6–17), then the phase map, the thresholds
# and how the map moves when each threshold moves by ±25 %.
# Re-run: `phasezoo notebook 02_phases -p zoo convection-pinn`.

# %% tags=["parameters"]
zoo = "digits-resnet18"
profile = "mini"
root = "data/zoos"

# %%
import matplotlib.pyplot as plt

from phasezoo.analysis.plots import zoo_phase_plot
from phasezoo.analysis.report import phase_report
from phasezoo.spec import load_spec

spec = load_spec(zoo)
fig = zoo_phase_plot(spec, profile, root)
plt.show()

# %%
print(phase_report(spec, profile, root))
