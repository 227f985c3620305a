"""X-ray line energies (keV) and atomic masses of the elements met in steel inclusions, and detector resolution."""

from __future__ import annotations

import numpy as np

# line: (energy keV, atomic mass of the element)
LINES: dict[str, tuple[float, float]] = {
    "C_Ka": (0.277, 12.011), "N_Ka": (0.392, 14.007), "O_Ka": (0.525, 15.999), "F_Ka": (0.677, 18.998),
    "Na_Ka": (1.041, 22.990), "Mg_Ka": (1.254, 24.305), "Al_Ka": (1.486, 26.982), "Si_Ka": (1.740, 28.085),
    "P_Ka": (2.013, 30.974), "S_Ka": (2.307, 32.06), "Cl_Ka": (2.622, 35.45), "K_Ka": (3.314, 39.098),
    "Ca_Ka": (3.692, 40.078), "Ti_Ka": (4.511, 47.867), "V_Ka": (4.952, 50.942), "Cr_Ka": (5.415, 51.996),
    "Mn_Ka": (5.899, 54.938), "Fe_Ka": (6.404, 55.845), "Fe_La": (0.705, 55.845), "Co_Ka": (6.930, 58.933),
    "Ni_Ka": (7.478, 58.693), "Cu_Ka": (8.048, 63.546), "Zn_Ka": (8.639, 65.38), "Zr_La": (2.042, 91.224),
    "Nb_La": (2.166, 92.906), "Mo_La": (2.293, 95.95), "Ag_La": (2.984, 107.868), "Pd_La": (2.838, 106.42),
    "La_La": (4.651, 138.905), "Ce_La": (4.840, 140.116), "W_Ma": (1.775, 183.84),
}

FWHM_MN_EV = 130.0  # a typical SDD at Mn Kα


def element(line: str) -> str:
    """'Mn_Ka' → 'Mn'."""
    return line.split("_", 1)[0]


def fwhm_kev(energy_kev: np.ndarray | float, fwhm_mn_ev: float = FWHM_MN_EV) -> np.ndarray:
    """Detector FWHM at ``energy_kev``: FWHM² = FWHM(Mn Kα)² + 2.5 eV·(E − 5895 eV) (Fiori & Newbury).

    >>> round(float(fwhm_kev(5.895)), 3)
    0.13
    """
    e_ev = np.asarray(energy_kev, float) * 1000
    return np.sqrt(np.maximum(fwhm_mn_ev**2 + 2.5 * (e_ev - 5895.0), 400.0)) / 1000
