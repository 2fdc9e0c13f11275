"""The standard TIMIT phone-recognition conventions: the 61 phones, their folding to 39, and the
speaker lists of the core test and development sets.

Folding: Lee & Hon (1989) train on 48 classes and score on 39; the map below (61 -> 39, the glottal
stop "q" deleted) is the third column of Kaldi's ``egs/timit/s5/conf/phones.60-48-39.map`` and the
``from_60_to_39_phn`` table of SpeechBrain's TIMIT recipe, which agree. We checked it against
those two sources, not against Lee & Hon's paper.

Speakers: the core test set is 24 speakers (2 male, 1 female per dialect region; 192 SI/SX
utterances) from TIMIT's documentation; the development set is the 50 speakers (400 SI/SX
utterances) of Kaldi's ``conf/dev_spk.list``, usually attributed to Halberstadt (1998). Both lists
were checked against SpeechBrain's ``recipes/TIMIT/timit_prepare.py`` (and the dev list against
Kaldi's); we could not read Halberstadt's thesis. The SA sentences (SA1, SA2), read by every
speaker in training and test alike, are left out of every split, as is standard.
"""

from __future__ import annotations

from collections.abc import Iterable

# Every phone that may appear in a .PHN file: TIMIT's 61 labels (closures, pauses, "h#" at the ends).
FOLD_39: dict[str, str | None] = {
    "aa": "aa", "ae": "ae", "ah": "ah", "ao": "aa", "aw": "aw", "ax": "ah", "ax-h": "ah", "axr": "er",
    "ay": "ay", "b": "b", "bcl": "sil", "ch": "ch", "d": "d", "dcl": "sil", "dh": "dh", "dx": "dx",
    "eh": "eh", "el": "l", "em": "m", "en": "n", "eng": "ng", "epi": "sil", "er": "er", "ey": "ey",
    "f": "f", "g": "g", "gcl": "sil", "h#": "sil", "hh": "hh", "hv": "hh", "ih": "ih", "ix": "ih",
    "iy": "iy", "jh": "jh", "k": "k", "kcl": "sil", "l": "l", "m": "m", "n": "n", "ng": "ng",
    "nx": "n", "ow": "ow", "oy": "oy", "p": "p", "pau": "sil", "pcl": "sil", "q": None, "r": "r",
    "s": "s", "sh": "sh", "t": "t", "tcl": "sil", "th": "th", "uh": "uh", "uw": "uw", "ux": "uw",
    "v": "v", "w": "w", "y": "y", "z": "z", "zh": "sh",
}
PHONES_61: tuple[str, ...] = tuple(sorted(FOLD_39))
PHONES_39: tuple[str, ...] = tuple(sorted({p for p in FOLD_39.values() if p is not None}))

CORE_TEST_SPEAKERS = frozenset("""
    mdab0 mwbt0 felc0  mtas1 mwew0 fpas0  mjmp0 mlnt0 fpkt0  mlll0 mtls0 fjlm0
    mbpm0 mklt0 fnlp0  mcmj0 mjdh0 fmgd0  mgrt0 mnjm0 fdhc0  mjln0 mpam0 fmld0
""".split())

DEV_SPEAKERS = frozenset("""
    fadg0 faks0 fcal1 fcmh0 fdac1 fdms0 fdrw0 fedw0 fgjd0 fjem0 fjmg0 fjsj0 fkms0
    fmah0 fmml0 fnmr0 frew0 fsem0 majc0 mbdg0 mbns0 mbwm0 mcsh0 mdlf0 mdls0 mdvc0
    mers0 mgjf0 mglb0 mgwt0 mjar0 mjfc0 mjsw0 mmdb1 mmdm2 mmjr0 mmwh0 mpdf0 mrcs0
    mreb0 mrjm4 mrjr0 mroa0 mrtk0 mrws1 mtaa0 mtdt0 mteb0 mthc0 mwjg0
""".split())


def fold_phones(phones: Iterable[str]) -> list[str]:
    """61-phone labels -> the 39-phone set (Lee & Hon 1989), deleting glottal stops. Neighbours
    that fold to the same phone (e.g. "pau h#") stay two labels, as in the usual scoring."""
    out = []
    for phone in phones:
        if phone not in FOLD_39:
            raise ValueError(f"phones holds {phone!r}, which is not one of TIMIT's 61 phones")
        folded = FOLD_39[phone]
        if folded is not None:
            out.append(folded)
    return out
