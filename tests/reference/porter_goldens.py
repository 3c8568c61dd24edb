#!/usr/bin/env python3
r"""The Porter stemmer golden of src/eval/porter.rs: NLTK's PorterStemmer() (its default mode,
NLTK_EXTENSIONS, the stemmer rouge-score's use_stemmer=True runs) on every distinct token longer
than three characters of the given text files, tokenized as rouge-score tokenizes, plus a list of
hard cases and words built from stems and suffixes that exercise each rule's condition. Writes
tests/fixtures/rouge/porter.tsv: `word<TAB>stem`, or `word` alone when the stem is the word.

    pip install nltk==3.10.4 rouge-score==0.1.2
    python3 tests/reference/porter_goldens.py /tmp/summ/out/summ.*.tsv \
        > tests/fixtures/rouge/porter.tsv

The summ.*.tsv files are summ_corpus.py's output (Debian package descriptions and their
synopses: English prose with technical words, names and numbers).
"""
import itertools
import re
import sys
from importlib.metadata import version

from nltk.stem.porter import PorterStemmer
from rouge_score import tokenize

# Irregular forms, the 4-letter -ies/-ied cases, and words for the rules NLTK adds or changes.
HARD = """
skies sky dying lying tying news innings inning outings outing cannings canning howe proceed
exceed succeed ties dies pies lies spies flies cries dried tried spied died tied cried
ponies caresses caress cats feed agreed bleed speed need plastered bled motoring sing singing
conflated troubled sized hopping tanned falling hissing fizzed failing filing owing owed awing
axing happy enjoy sky spy fly cry try by toy boy yyyy yyyyy yyyyyy syzygy ayyy ayyyy
relational conditional rational valenci hesitanci digitizer conformabli radicalli differentli
vileli analogousli vietnamization predication operator feudalism decisiveness hopefulness
callousness formaliti sensitiviti sensibiliti triplicate formative formalize electriciti
electrical hopeful goodness revival allowance inference airliner gyroscopic adjustable
defensible irritant replacement adjustment dependent adoption homologou communism activate
angulariti homologous effective bowdlerize probate rate cease controll roll
sensationally conditionally hopefully possibly generally radically fully dully usually
geology theology archaeology philology biology ecology apology eulogy trilogy analogy
generously ridiculously previously nationally rationally emotionally
abatement cement element statement agreement disagreement preagreement movement moment torment
abundance elegance cadence presence brilliance reliance
skiing skis news newsy innings innings1 mp3s x86s 1990s 2000s 3ies 4ies 5ied 10eed 123ed 42ing
a1b2s abc1ed x11ing utf8ing mp3ing ipv6s 64bit 32bits h264ies
"""

# Stems of every shape the conditions look at: measure 0, 1, 2, 3; y as vowel and consonant;
# endings cvc (with and without w, x, y), vowel-consonant, double consonants (l, s, z and others).
STEMS = """
b a y ya ay yy tr ee tree oat by hop fil fizz hiss tann fall conflat troubl siz box sow toy
gen generic relat rat val hesit digit conform radic differ vil analog vietnam predic oper feud
decis hope call form sensit sensib triplic electr good reviv allow infer airlin gyroscop adjust
defens irrit replac depend adopt homolog commun activ angular effect bowdler prob ceas controll
roll geo theo archaeo sky syzyg s e ie ag fe ow ax ey oy fear plan wander cr sp bl st str enj
rel cond nat sens form c v cv vc cvc
""".split()

SUFFIXES = """
s es ies sses ss ied eed ed ing y ly e ll ational tional enci anci izer bli abli alli entli eli
ousli ization ation ator alism iveness fulness ousness aliti iviti biliti fulli logi logy icate
ative alize iciti ical ful ness al ance ence er ic able ible ant ement ment ent ion sion tion
ou ism ate iti ous ive ize ings edly ingly ically fully ations ers ness lessness ities
""".split()


def main():
    stemmer = PorterStemmer()
    assert stemmer.mode == PorterStemmer.NLTK_EXTENSIONS
    words = set()
    for path in sys.argv[1:]:
        with open(path, encoding="utf-8") as f:
            for line in f:
                words.update(t for t in tokenize.tokenize(line, None) if len(t) > 3)
    from_text = len(words)
    words.update(w for w in HARD.split() if len(w) > 3)
    words.update(s + x for s, x in itertools.product(STEMS, SUFFIXES) if len(s + x) > 3)
    assert all(re.fullmatch(r"[a-z0-9]+", w) for w in words)
    rows, changed = [], 0
    for w in sorted(words):
        s = stemmer.stem(w)
        # The stem rouge-score's tokenizer gives for the word on its own.
        assert tokenize.tokenize(w, stemmer) == [s], w
        changed += s != w
        rows.append(w if s == w else f"{w}\t{s}")
    print("# NLTK PorterStemmer() (NLTK_EXTENSIONS) stems: word<TAB>stem, or word when unchanged.")
    print(f"# nltk {version('nltk')}, rouge-score {version('rouge-score')}; made by "
          "tests/reference/porter_goldens.py")
    print(f"# {len(rows)} words ({from_text} from text), {changed} changed by stemming")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
