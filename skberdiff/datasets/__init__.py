"""Offline benchmark data: MNI152-derived brain MRI slices with synthetic lesions, toy images.

Nothing here downloads anything. :func:`make_mni_benchmark` builds a BRATS-like 4-channel
axial-slice benchmark from the MNI152 2009a maps that ship inside the nilearn wheel (T1
template, grey- and white-matter probability maps, brain mask). Every slice is a distinct,
randomly deformed and re-acquired "subject"; test slices carry synthetic lesions with exact
pixel masks. Its ``size`` presets (sample counts and image size) are listed in
``SIZE_PRESETS``. :func:`make_toy_images` and :func:`make_oct_like` are small dependency-free
generators for unit tests and for the 1-channel OCT path.

All lesions, the T1ce/T2/FLAIR contrasts and the subject-to-subject variation are synthetic.
Scores measured on these data are those of a *synthetic-lesion benchmark on an MNI-derived
brain*; they are not comparable to the BRATS2020 figures of Wolleb et al. (2024).

The MNI152 maps are used under the following notice:

    Copyright (C) 1993-2009 Louis Collins, McConnell Brain Imaging Centre, Montreal
    Neurological Institute, McGill University. Permission to use, copy, modify, and
    distribute this software and its documentation for any purpose and without fee is
    hereby granted, provided that the above copyright notice appear in all copies. The
    authors and McGill University make no representations about the suitability of this
    software for any purpose. It is provided "as is" without express or implied warranty.
    The authors are not responsible for any data loss, equipment damage, property loss, or
    injury to subjects or patients resulting from the use or misuse of this software
    package.

References
----------
.. [1] Fonov V., Evans A., McKinstry R., Almli C., Collins D. (2009). Unbiased nonlinear
   average age-appropriate brain templates from birth to adulthood. NeuroImage 47, S102.
.. [2] Fonov V., Evans A. C., Botteron K., Almli C. R., McKinstry R. C., Collins D. L.
   (2011). Unbiased average age-appropriate atlases for pediatric studies. NeuroImage 54(1),
   313-327.
.. [3] Meissen F., Kaissis G., Rueckert D. (2021). Challenging current semi-supervised
   anomaly segmentation methods for brain MRI. MICCAI BrainLes workshop, 63-74.

Notes
-----
Calibration (pixel AUPRC pooled over the lesion test slices, ``random_state=0``): a
per-channel intensity threshold tuned on the validation lesions reaches 0.136 at 64x64
(``size="small"``; 0.14-0.20 over seeds 0-2) and 0.157 at 256x256 (``size="default"``),
well below 0.7, while the oracle map ``|x - x_lesion_free|`` reaches 0.915 and 0.928.
Reproduce with ``python benchmarks/calibrate_datasets.py small`` (or ``default``) from a
source checkout; details in :func:`make_mni_benchmark`.
"""

from ._mni import CHANNEL_NAMES, LESION_KINDS, SIZE_PRESETS, make_mni_benchmark
from ._oct import make_oct_like
from ._toy import make_toy_images

__all__ = [
    "CHANNEL_NAMES",
    "LESION_KINDS",
    "SIZE_PRESETS",
    "make_mni_benchmark",
    "make_toy_images",
    "make_oct_like",
]
