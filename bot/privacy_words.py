"""Words the redactor needs to tell a caller's name from what callers ordinarily say.

``COMMON_WORDS`` is what a name is not: ``FUNCTION_WORDS`` and ``EVERYDAY_WORDS``
(written here) plus ``TRAINING_VOCABULARY``, every word of the examples in
``data/nlu/`` and ``tests/nlu/holdout.yml`` as the redactor's tokenizer splits them,
lowercased, without the details already redacted (e-mails, phones, addresses,
postcodes) and without the people's names found there ("sarah jones", "mona lisa").
A word in a name's place that the intents use is far more likely to be that word
than a name. ``NAMES_ALSO_WORDS`` are the names that are also such words ("bill",
"mark", "will"); after an introduction they count as names.

``python -m bot.privacy_words`` lists the words of the current training data that
``COMMON_WORDS`` lacks, for someone to add here after checking none is a name.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FUNCTION_WORDS = frozenset(
    """
    a about above across after again against ago all almost along already also although always
    am among an and another any anybody anyone anything anyway anywhere are around as at away
    back be because been before behind being below beside besides between both but by can
    cannot could did do does doing done down during each either else enough even ever every
    everybody everyone everything for from further had has have having he her here hers herself
    him himself his how however i if in instead into is it its itself just least less like
    many may maybe me might mine more most much must my myself near neither never no nobody
    none nor not nothing now of off often on once one only onto or other others otherwise our
    ours ourselves out over own per perhaps please quite rather really same several shall she
    should since so some somebody someone something sometimes soon still such than that the
    their theirs them themselves then there these they this those though through thus till to
    too toward towards under unless until up upon us very via was we were what whatever when
    whenever where whether which while who whoever whole whom whose why will with within
    without would yet you your yours yourself yourselves
    's 'm 're 've 'll 'd n't ca wo im ive id ill youre youve theyre dont doesnt didnt cant
    wont isnt arent wasnt werent havent hasnt hadnt couldnt wouldnt shouldnt thats whats
    um umm uh uhh uhm er erm hmm mm ah oh ok okay yes yeah yep yup no nope hi hello hey hiya
    thanks thank cheers sorry pardon right well sure fine
    """.split()
)
# Words a caller may put where an introduction's name would go ("my name is spelt
# wrong", "it's probably here") that the training data happens not to use.
EVERYDAY_WORDS = frozenset(
    """
    spelt spelled spelling misspelt misspelled mistyped misprinted listed shown showing
    written printed displayed stored saved wrongly incorrectly correctly properly clearly
    probably definitely certainly possibly apparently obviously honestly basically literally
    urgent important serious ridiculous unbelievable outrageous pathetic disgusting shocking
    terrible awful annoying frustrating confusing strange odd weird funny silly stupid crazy
    absurd insane hopeless useless impossible unacceptable typical unreal mad nuts joke
    short long longer shorter hyphenated double complicated unusual common foreign difficult
    official legal full first last middle maiden married family christian given proper real
    usual old new previous former current actual changed updated different wrong right
    correct missing blank empty gone hidden visible important attached linked connected
    god christ heaven heavens goodness gosh lord jesus pete
    noisy loud dark light cold hot warm sunny rainy windy snowy foggy wet dry busy quiet
    lovely nice chaos chaotic manic hectic packed crowded dead mental bonkers freezing boiling
    """.split()
)
# Common names that are also words the intents use; after an introduction they are names.
NAMES_ALSO_WORDS = frozenset(
    """
    bill will mark grant june may april august rose hope joy faith grace dawn summer
    victoria bond black brown green white grey gray cook baker taylor king hall hill wood
    young price page ward wells fox swift rich frank jack sky ruby amber crystal
    """.split()
)
TRAINING_VOCABULARY = frozenset(
    """
    'd 'll 'm 're 's 've aa ab about absolutely accept accepted access accident accidentally
    account accounts activation actual actually add address addresses adopt advice adviser
    advisers affirmative afraid after afternoon again against agent agents ages aggressive ago
    ah ahead ai airline airport alarm alcohol alexa alive all allowance alone along already
    alright also alter am amend america american amex amount an and android angry animal ankle
    annoyed another answer answering antibiotics any anybody anymore anyone anything anywhere
    apart apartment apologies apologise app appalling appeal appeared apple applied apply
    appointment appreciate appreciated approved are area around arrange arrive arrived arrives
    arriving artificial as ask asked assessment assistance assistant at attempt attempts august
    aunties australia authentication authorisation automated available away awesome awful aye
    back bad badge badly bag bake baking balance banana bang bank banking banks barclays barking
    bashed basically basket batman battery battle bb bbc bc be beatles because bed beef been
    before beg being best better between big bigger biggest bike bill billed billing bin bins
    birmingham birth birthday bit bits black blank blender blocked blood blue bluetooth bn
    boarding body boil boiler bond bones book booked booking bookshelf bot both bother bots
    bottle bought bounced bouncing box boxes boxing bq brazil bread break breakdown breakfast
    brighton brilliant bring bristol british broadband broke broken brother brothers bs bt
    building built bulb bunch burst bus business busy but button buy by bye ca cab cake call
    callback called calling calls calories came camping can cancel cancellation cancelled
    capital car card cardiff cards care carry cash cat catch cats cause caused cd centimetres
    centre certain certainly cf chairs chance change changed changes changing charge charged
    charges charging charts chase chat chatbot chatting cheap cheaper cheapest check checked
    checking checkout cheer cheerio cheers chicken chickenpox child chilli china chinese chipped
    choices choose christmas cinema circle circles city claim claims cleared clearing close
    closed closes clue clutch coast coat code coffee cold colleague collect collected collection
    colour combine come comedy comes coming communication company compare compensation complain
    complained complaint complaints complete completely computer concerts confirm confirmation
    connect connection console contents continents contract convert cook cooked cooker copy
    cornwall correct cost cough could council country couple courier course cover covered crack
    cracked crackled crashes crashing create credit credited crescent cricket crown crushed
    current curry curtains customer cut cutting cv damage damaged darts dashboard data date
    dating daughter daughters day days deadline dealt debit declined declining deep definitely
    delayed delete deleted deliver delivered delivering delivery dent dented dentist department
    depot derby descale details devices did die difference different digits dinner direct
    directions dirty disabled disappointed disconnecting discount discovered disgrace
    disgraceful disgusted dispatch dispatched distracted divided divorce dizzy dna do doctors
    documentary does dog doing dollars done door doorstep double doubled down dreadful dress
    drink driver drivers driving drop dropped dropping drove due duplicate during earlier
    earliest early earn easter easy eat edinburgh edit ee egg eggs eh eight eighty either
    election electric electrician electricity else elses elsewhere email emailed emails employer
    empty end ending ends energy engine england enough entered er erm error erroring errors
    escalate estimated eta euros eurovision even evening ever everest every everything
    everywhere evict exact exactly excess exchange expect expected expecting expenses expensive
    experience expired explain explaining express extremely fab facebook factor factory failed
    failing fails family far farewell fastest faulty favourite fed fee feedback feel feeling
    fence ferry fetch few fifteen fifth fifty fight file fill film films final finally find fine
    finish finished first fish fishing fit fitted five fix flashing flat flight flights flood
    flooding flu fluffy foggiest follow football footballer for forecast forget forgot forgotten
    form formal formally formula forth fortnight forty found four france free freeze freezes
    freezing french friday fridays friend friends from front frosty froze frozen full fuming
    funny furious furniture game games garage garden gas gate gatwick gave get gets getting gift
    give given giving glasgow glass glastonbury gmail go goals goes going golf gone good goodbye
    goodnight google got gp gpt gran grand grans gravy great greece green greetings grey grow
    guest guy gym hacked had hair half halifax hallo halt hand handed handled hang hanging
    happened happening happy has hassle hastings have having he head headache heading headlines
    headphones hear heard heat heathrow heatwave held hello help helped helper helpful helping
    helpline helps her here hey heya hi high higher him hiring his history hit hiya hmm hmrc
    hobbies hold holding holiday holidays home homework honest honestly hoover hope hose
    hospital hot hotel hour hours house how howdy huge huh human humans hundred hung hurts
    husbands ibuprofen ice icy idea if ill in inch include included incorrect increase indeed
    index inheritance inside install instalment instalments instead insurance insurer
    intelligence interest internet interview into invented invoice iphone is issue issued it
    italian item itemised items its itself jab jacket jackets jeans job joint joke jokes jump
    jumper june just keep keeping keeps kept kettle keys kids kilometres kind kindly klarna knee
    knock knocked know label lamb lamp land landed landline landlord lands language laptop
    lasagne last late later laters latest laugh lawn league leak leaking leap learn leave leeds
    left leftover legs less let lets letter letting library licence lied life light like likely
    limit line lines link list live liverpool ll lloyds load loading loads loan location locked
    locker lodge log logged logging login london long longer longest look looked looking looks
    lost lot lottery love lovely ls luggage lunch lunchtime machine made mail make making malaga
    malware man manager manchester manned many map marathon march marked market marketing
    married mastercard match mate mates me mean meaning meant meat medium meeting member
    membership merge message messed meter method methods mhm microchipped microwave migraines
    miles million mind mine minimum minister minute minutes mirror misheard missed missing
    mistake mm mobile model moment monday money monitor month moon more morning mortgage most
    mot motorway mount move moved moving mrs much mum mums music must my n't na nah name
    national nations near nearby nearest nearly need needed needs negative neighbour neighbours
    netflix never new newest news next nhs nice night nightmare nine ninety nintendo no nobody
    noise nope normal not nothing notice now nowhere nt number numbers ocean of off office
    offline often oh oil ok okay old older olive olympics on once one online only open opened
    opening operator options or order ordered ordering orders original other out outside oven
    over overcharged overcharging overdraft overdue owe owed own package packaging packed page
    paid painkillers painted pair pancakes paperwork paracetamol parcel pardon parents paris
    park parking part partial partner partners pass passcode passed passport password past pasta
    patience patient pay paying payment payments paypal pc pending penicillin pension people per
    percent perfect permission permit person personal pet pharmacy phone phones photo photos
    physio pick picked pickup pieces pin pinch pipe pizza place placed plan plane planets
    planning play playing playstation please plumber plus podcast point policy poor pops
    population possible post postage postcode posted potatoes pothole pounds powder power pre
    prefer preferences premier preorder prepare prescription present press pressure price prices
    prime print printed printer prix problem problems proceed process processed processing
    product products profile program programme progress progressing promise promised promo proof
    proper properly provider pudding puncture puppy purchase purchases pushing put putting
    quality quarter query querying question questions queue quiche quick quickest quid quiet
    quietest quite quote ra rabbit race radio rail rain raise raising random rang rash rate
    rates rather re reach read reading ready real realised really rebate receipt receive
    received recent recipe recognise recommend record recorded recording records recycling red
    redirect redirecting reference refund refunded refunds refused register registered rejected
    rejects relaxing relief remember remind remote remove removed renew renewal repeat
    replacement report representative request reroute rescheduling resend reserve reset respond
    responding rest restarting restaurant result return returned returning returns rg rice rid
    ridiculous right ring ringing ripped river riverside road roads roast robot room root round
    router royal rubbish rude rug rugby ruined run rung running ryanair safe said salary sale
    salmon same samsung sang saturday saturdays sauce save saved savings say saying says
    schedule school score scored scrambled scrap scratch scratched scratching screen sea search
    season second secure security see seem seems seen self sell send sender sending sends senior
    sent series serious serve service services set seven shambles shattered sheffield ship
    shipment shipped shipping ships shocking shoes shop shopping shops should show showed
    showing shown shows shut sick side sign signal signed since sing single sings sink siri
    sister sisters site six sixty size sky slipped slot slow slower slowly small smaller smart
    smashed snapped snooker snow so soaking soda sofa solar sole solicitor some somebody someone
    something somewhere son song soon sore sorry sort sorted sorting sound sounds soup spain
    spam spanish speak speaker speaking speed spelled spider split spoke sponge spot sprained
    square stadium staff stage stalling stand standards standing star start starts state
    statement station status stay staying steak step still stitches stock stolen stop stopped
    store storm story straight street strictly struggling stuck student stuff submit
    subscription such suit suitcase sunday sundays sunny super supermarket supervisor supplier
    supposed sure surname suspended swallowed swap swearing swift switch swollen system ta table
    tablet take takeaway taken takes taking talk talking tall tallest tariff tax taxed taxi team
    telephone tell telling temperature ten tennis terrible test text than thank thanks that the
    theatre them then there these they thing things think third thirty this those though
    thoughts three threshold threw throat through thrown thursday thursdays ticket tickets till
    time times timetable timing tired titanic to toaster today tokyo told tomatoes tomorrow
    tonight too took top total touch town toys track tracking trader trading traffic train
    trainers transaction transfer transferred transit translate travel treated tried tries
    trouble trousers try trying tt tuesday turkey turn turned turning tv twelfth twelve
    twentieth twenty twice two typed tyre uh uk um umbrella unable unacceptable unblock under
    understand undo unhappy unhelpful unit united universal unlock unsubscribe unsuccessful
    until unwanted up update updated updates upgrade use used useful useless username using
    usual utr uv van vanished vase vat ve vegetarian verification verified verify very vet
    victoria virtual virus visa vodafone voice void vote voucher wage wages wait waited waiting
    walk wanna want wanted wanting war warehouse warm warning was washed watch water way weather
    website wedding wednesday week weekend weekends weeks weird well went were wet what when
    where whereabouts whether which while who whole why wife wifi will wimbledon win window
    windows windscreen windy wine wish with withdraw without wo won wonderful wondering wooden
    word work working works world worried worst would write writing wrong wrote xbox xy ya yeah
    year years yeast yep yes yesterday yet yo york you your yourself yup zero    """.split()
)
COMMON_WORDS = FUNCTION_WORDS | EVERYDAY_WORDS | TRAINING_VOCABULARY

# Training data the vocabulary comes from, relative to the project folder.
VOCABULARY_SOURCES = ("data/nlu", "tests/nlu/holdout.yml")
_ANNOTATION = re.compile(r"\[([^\]]+)\](?:\([^)]*\)|\{[^}]*\}|\[[^\]]*\])")
_PLACEHOLDER = re.compile(r"\[[a-z_]+\]")
_VOCABULARY_WORD = re.compile(r"[a-z][a-z']+|'[a-z]+")


@dataclass(frozen=True)
class Word:
    """One word of caller text: as written, lowercased, and its character offsets."""

    text: str
    lower: str
    start: int
    end: int


def words_of(tokens: Iterable[Any]) -> list[Word]:
    """spaCy tokens as words, without whitespace tokens. Words joined by a hyphen
    with no space around it are one word: "o'neill-smith", "1980-03-03"."""
    raw = [
        Word(str(token.text), str(token.text).lower(), token.idx, token.idx + len(token.text))
        for token in tokens
        if not token.is_space
    ]
    words: list[Word] = []
    index = 0
    while index < len(raw):
        word = raw[index]
        while index + 2 < len(raw) and _hyphenated(word, raw[index + 1], raw[index + 2]):
            after = raw[index + 2]
            word = Word(
                f"{word.text}-{after.text}", f"{word.lower}-{after.lower}", word.start, after.end
            )
            index += 2
        words.append(word)
        index += 1
    return words


def _hyphenated(before: Word, hyphen: Word, after: Word) -> bool:
    return (
        hyphen.text == "-"
        and before.end == hyphen.start
        and hyphen.end == after.start
        and before.lower[-1:].isalnum()
        and after.lower[:1].isalnum()
    )


def training_examples(project_dir: Path) -> list[str]:
    """Every NLU example of the vocabulary's sources, annotations reduced to their words."""
    import yaml

    paths: list[Path] = []
    for source in VOCABULARY_SOURCES:
        path = project_dir / source
        paths += sorted(path.rglob("*.yml")) if path.is_dir() else [path]
    examples = []
    for path in paths:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for entry in data.get("nlu") or ():
            if not isinstance(entry, dict) or not isinstance(entry.get("examples"), str):
                continue
            for line in entry["examples"].splitlines():
                line = line.strip()
                if line.startswith("- "):
                    examples.append(_ANNOTATION.sub(lambda match: match.group(1), line[2:]))
    return examples


def unknown_words(examples: Sequence[str]) -> list[str]:
    """Words of the examples that ``COMMON_WORDS`` lacks, outside redacted details."""
    from bot.privacy import Redactor

    redactor = Redactor()
    unknown: set[str] = set()
    for example in examples:
        redacted = _PLACEHOLDER.sub(" ", redactor.redact(example).text.lower())
        for word in redactor.words(redacted):
            if _VOCABULARY_WORD.fullmatch(word.lower) and word.lower not in COMMON_WORDS:
                unknown.add(word.lower)
    return sorted(unknown)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    project_dir = Path(args[0]) if args else Path.cwd()
    missing = unknown_words(training_examples(project_dir))
    print("\n".join(missing) if missing else "every word of the training data is listed")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
