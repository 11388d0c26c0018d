"""The words of the synthetic catalog that `pipelines.generate` writes.

Genres (`GENRE_TABLE`: a name, how common it is, its family and the phrases its items are
described with) and the word lists titles and series names are built from. Data only: what is
drawn from them, and how, is in `generate_items`.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


# fmt: off
class Genre(NamedTuple):
    """A genre and the words its items are described with (lists are "; "-separated)."""

    name: str
    share: float  # relative share of items whose first genre it is
    family: int  # related genres share part of their taste vector: dark, light, epic, real
    label: str
    moods: str
    people: str
    plots: str
    places: str
    themes: str
    nouns: str  # for titles, space-separated


GENRE_TABLE = (
    Genre("Action", 7, 2, "action film", "explosive; relentless; high-octane; gritty",
     "a disgraced bodyguard; an ex-special-forces medic; a getaway driver; a lone cop",
     "must stop a heist gone wrong; fights through a city under siege; races to defuse a bomb; "
     "takes on a ruthless cartel", "inside a locked-down skyscraper; on the streets of a neon "
     "city; aboard a runaway train; in a remote border town", "car chases; hand-to-hand combat; "
     "split-second choices; a final showdown", "Strike Vendetta Pursuit Impact Crossfire"),
    Genre("Adventure", 4, 2, "adventure", "sweeping; daring; globe-trotting; breathless",
     "a young cartographer; a treasure hunter; a runaway heiress; a retired explorer",
     "follows a forgotten map; searches for a lost expedition; crosses an uncharted ocean; "
     "chases a legendary relic", "across a frozen wilderness; through the jungles of the Amazon; "
     "beneath the desert sands; among uncharted islands", "ancient ruins; narrow escapes; "
     "unlikely friendships; the call of the unknown", "Expedition Voyage Compass Horizon Relic"),
    Genre("Animation", 2.5, 1, "animated feature", "colourful; whimsical; heartwarming; playful",
     "a curious robot; a talking fox; a shy little dragon; a toy left behind",
     "sets out to find the way home; learns to be brave; befriends a lonely child; "
     "saves the village from a storm", "in a candy-coloured kingdom; in a forest of giants; in a "
     "city of toys; beneath a patchwork sky", "friendship; bright songs; silly sidekicks; "
     "hand-drawn wonder", "Balloon Whisker Doodle Pebble Lantern"),
    Genre("Biography", 1.5, 3, "biographical drama", "intimate; inspiring; unflinching; moving",
     "a self-taught scientist; a pioneering aviator; a legendary singer; a civil-rights lawyer",
     "rises from poverty to fame; fights the establishment; risks everything for a discovery; "
     "faces a public downfall", "in post-war Europe; in 1960s America; in colonial India; in "
     "the halls of power", "true events; personal sacrifice; a life in the spotlight; legacy",
     "Portrait Testament Memoir Life Legacy"),
    Genre("Comedy", 9, 1, "comedy", "hilarious; offbeat; feel-good; chaotic",
     "a clumsy wedding planner; a reluctant best man; an overconfident substitute teacher; "
     "a failed stand-up comic", "accidentally swaps lives with a stranger; plans the worst "
     "family reunion; fakes an engagement; inherits a failing pizzeria", "in a sleepy suburb; "
     "at a disastrous holiday resort; in a cramped city apartment; on a chaotic road trip",
     "awkward misunderstandings; slapstick; witty banter; big laughs",
     "Mixup Hiccup Shenanigans Blunder Caper"),
    Genre("Crime", 5, 0, "crime drama", "gritty; tense; noir; morally grey",
     "a jaded detective; a reluctant informant; a mob accountant; a rookie prosecutor",
     "hunts a serial killer; is drawn into a money-laundering scheme; plans one last robbery; "
     "uncovers police corruption", "in the underworld of Chicago; in a rain-soaked city; in "
     "a corrupt port town; along the docks at night", "organised crime; double-crosses; "
     "interrogations; blood money", "Syndicate Alibi Racket Verdict Ransom"),
    Genre("Documentary", 3, 3, "documentary", "eye-opening; thoughtful; revealing; urgent",
     "a marine biologist; an investigative journalist; a factory worker; a climate "
     "scientist", "investigates a hidden scandal; follows a vanishing species; documents a year "
     "on the front line; records the fight for clean water", "in the Arctic; inside global "
     "supply chains; in the deep ocean; across rural Africa", "real interviews; archival "
     "footage; the natural world; hard facts", "Footprint Frontline Evidence Planet Record"),
    Genre("Drama", 10, 3, "drama", "quiet; emotional; bittersweet; powerful",
     "a grieving father; an estranged daughter; a struggling nurse; an ageing farmer",
     "returns home after twenty years; confronts a family secret; fights to keep the farm; "
     "rebuilds a life after loss", "in a small coastal town; in a working-class neighbourhood; "
     "on a failing farm; in a hospital ward", "family bonds; grief and hope; second chances; "
     "redemption", "Homecoming Tides Silence Bloodline Harvest"),
    Genre("Family", 3, 1, "family film", "charming; gentle; uplifting; cosy",
     "a brave ten-year-old; a scruffy rescue dog; a shy new kid; a kind grandmother",
     "rescues a stray pony; wins the school science fair; saves the summer camp; helps Santa "
     "on Christmas Eve", "on a countryside farm; at summer camp; in a snowy mountain village; "
     "in a magical treehouse", "family fun; loyal pets; holiday spirit; lessons in kindness",
     "Buddy Treehouse Puppy Snowflake Picnic"),
    Genre("Fantasy", 3, 2, "fantasy epic", "enchanting; mythic; spellbinding; dark",
     "an apprentice sorceress; an exiled prince; a dragon rider; a cursed knight",
     "seeks a stolen crown; must break an ancient curse; leads a rebellion against a tyrant; "
     "awakens a sleeping god", "in a kingdom of mist; beyond the enchanted forest; in a city "
     "of floating towers; in the realm of the fae", "magic and prophecy; dragons; sword and "
     "sorcery; ancient runes", "Throne Sorcery Dragonfire Prophecy Realm"),
    Genre("History", 1.5, 3, "historical drama", "sweeping; authentic; stately; rich",
     "a Roman general; a Tudor lady-in-waiting; a Viking chieftain; a Samurai's widow",
     "navigates the intrigues of the court; defends the empire's borders; sails to a new "
     "world; survives the fall of a dynasty", "in ancient Rome; in Elizabethan England; in "
     "feudal Japan; in Renaissance Florence", "period costumes; royal intrigue; empires; "
     "turning points of the past", "Empire Dynasty Crown Conquest Chronicle"),
    Genre("Horror", 4, 0, "horror film", "terrifying; eerie; blood-curdling; claustrophobic",
     "a paranormal investigator; a college freshman; a new tenant; a night-shift nurse",
     "awakens something in the basement; is stalked by a masked killer; hears whispers in the "
     "walls; is trapped with a demon", "in a haunted Victorian mansion; in an abandoned asylum; "
     "in a cabin in the woods; in a cursed village", "ghosts; possession; jump scares; a "
     "creeping dread", "Haunting Possession Nightmare Hollow Curse"),
    Genre("Music", 1.5, 1, "music drama", "soulful; electric; rhythmic; rousing",
     "a garage-band drummer; a gifted violinist; a washed-up rock star; a street rapper",
     "chases a record deal; prepares for the biggest concert of a lifetime; reunites the old "
     "band; writes one last song", "on a cross-country tour; in the jazz clubs of New Orleans; "
     "at a music conservatory; in a Nashville bar", "live performances; backstage drama; "
     "the power of music; stardom", "Encore Rhythm Anthem Harmony Melody"),
    Genre("Mystery", 3, 0, "mystery", "twisting; puzzling; atmospheric; clever",
     "an amateur sleuth; a retired inspector; a crime novelist; a curious librarian",
     "investigates a death at a country estate; unravels a decades-old disappearance; "
     "deciphers a coded diary; finds a body in the library", "in an English village; on a "
     "snowbound train; at an isolated island manor; in a fog-bound harbour", "clues and red "
     "herrings; a locked-room puzzle; hidden motives; a final reveal", "Riddle Cipher Clue "
     "Enigma Secret"),
    Genre("Romance", 5, 1, "romance", "swoon-worthy; tender; sparkling; passionate",
     "a small-town baker; a jaded lawyer; a rising chef; a widowed architect",
     "falls for an unexpected stranger; rekindles a high-school love; agrees to a fake "
     "relationship; writes letters to a secret admirer", "in Paris in the spring; at a "
     "vineyard in Tuscany; in a snowy ski lodge; in a seaside bookshop", "love at first sight; "
     "heartbreak; sweeping kisses; a happy ending", "Heartstrings Sweetheart Kiss Serenade "
     "Valentine"),
    Genre("Science Fiction", 3, 2, "science-fiction thriller",
     "mind-bending; futuristic; cerebral; dystopian",
     "a starship engineer; a rogue android; a time-travelling physicist; a colonist on Mars",
     "discovers an alien signal; tries to stop an AI uprising; is stranded on a dying planet; "
     "loops through the same day", "aboard a deep-space station; in a "
     "cyberpunk megacity; on a terraformed moon; in the year 3000", "time travel; artificial "
     "intelligence; alien contact; the fate of humanity", "Starship Android Nebula Quantum Orbit"),
    Genre("Sport", 1.2, 3, "sports drama", "rousing; triumphant; gritty; competitive",
     "an underdog boxer; a washed-up coach; a teenage sprinter; a rookie quarterback",
     "trains for the championship; leads a losing team to the finals; makes a comeback after "
     "injury; breaks a world record", "in a run-down boxing gym; on a high-school football "
     "field; at the Olympic Games; on a dusty baseball diamond", "teamwork; sweat and "
     "sacrifice; the big game; never giving up", "Champion Comeback Knockout Victory Rookie"),
    Genre("Thriller", 6, 0, "psychological thriller", "suspenseful; paranoid; taut; chilling",
     "a whistle-blower; an undercover agent; a woman who wakes with no memory; a hostage "
     "negotiator", "uncovers a government conspiracy; is framed for murder; races against a "
     "ticking clock; is hunted by an assassin", "in the corridors of power; in a surveillance "
     "state; in a stranded submarine; in a Berlin safe house", "conspiracy; cat-and-mouse "
     "games; shocking twists; paranoia", "Conspiracy Blackout Deadline Exposure Trap"),
    Genre("War", 1, 0, "war film", "harrowing; brutal; heroic; sombre",
     "a young infantryman; a field surgeon; a resistance fighter; a bomber pilot",
     "holds the line against overwhelming odds; goes behind enemy lines; must rescue a lost "
     "platoon; survives the final offensive", "on the beaches of Normandy; in the trenches of "
     "the Somme; in the jungles of Vietnam; in occupied Paris", "the horrors of war; "
     "brotherhood; sacrifice; courage under fire", "Battalion Frontline Siege Trenches Valour"),
    Genre("Western", 0.8, 3, "western", "dusty; rugged; lawless; sun-baked",
     "a weary gunslinger; a frontier sheriff; a bounty hunter; a homesteader's widow",
     "rides out for revenge; defends a town from outlaws; escorts a prisoner across the desert; "
     "stands up to a cattle baron", "on the open frontier; in a border saloon town; across the "
     "badlands; along the Santa Fe trail", "shoot-outs; horseback chases; frontier justice; "
     "the wild west", "Outlaw Frontier Gunsmoke Bounty Drifter"),
)
GENRES = tuple(g.name for g in GENRE_TABLE)
GENRE_SHARE = np.array([g.share for g in GENRE_TABLE]) / sum(g.share for g in GENRE_TABLE)
GENRE_FAMILY = np.array([g.family for g in GENRE_TABLE])
GENRE_WORDS = {  # field -> flat list, genre g's k-th entry at g * per_genre + k
    field: [w.strip() for g in GENRE_TABLE for w in getattr(g, field).split(sep)]
    for field, sep in [(f, ";") for f in Genre._fields[3:-1]] + [("nouns", None)]
}
TITLE_ADJECTIVES = (
    "Silent", "Broken", "Hidden", "Golden", "Crimson", "Last", "Lost", "Burning", "Frozen",
    "Hollow", "Wild", "Bitter", "Quiet", "Distant", "Endless", "Fallen", "Forgotten", "Midnight",
    "Scarlet", "Savage", "Shattered", "Sacred", "Secret", "Shining", "Stolen", "Sudden", "Velvet",
    "Wicked", "Iron", "Glass", "Paper", "Electric", "Crooked", "Restless", "Lonely", "Perfect",
    "Dark", "Bright", "Final", "First", "Northern", "Southern", "Eastern", "Western", "Long",
    "Little", "Great", "Red", "Blue", "Black", "White", "Silver", "Green", "Summer", "Winter",
    "Autumn", "Spring", "Twisted", "Brave", "Gentle", "Fierce"
)
TITLE_NOUNS = (
    "Harbor", "River", "Mountain", "City", "Garden", "Road", "Bridge", "Door", "Window", "Mirror",
    "Letter", "Promise", "Shadow", "Storm", "Fire", "Light", "Echo", "Dream", "Heart", "Crown",
    "Key", "Song", "Season", "Island", "Empire", "Kingdom", "Station", "Tower", "House", "Game",
    "Line", "Hour", "Night", "Morning", "Sky", "Sea", "Stone", "Wind", "Wolf", "Raven", "Fox",
    "Horse", "Ghost", "Stranger", "Sister", "Brother", "Daughter", "Son", "Queen", "King",
    "Witness", "Signal", "Secret", "Circle", "Map", "Winter", "Summer", "Tide", "Horizon"
)
OF_PLACES = (
    "the North", "the Lost Kings", "Tomorrow", "the Deep", "Avalon", "the Sun", "the Forgotten",
    "Eden", "Silence", "the Damned", "the Valley", "Glass", "Ashes", "the Tides", "the Moon",
    "Broken Dreams", "the Fallen", "Dust", "the Storm", "the Heart", "the Night", "Thunder",
    "the Empire", "the Wild", "Stars", "Rain", "Fire", "the Ages", "the Past", "No Return"
)
SERIES_HEADS = (
    "Star", "Iron", "Shadow", "Moon", "Storm", "Frost", "Ember", "Night", "Sun", "Silver", "Blood",
    "Ghost", "Dragon", "Crystal", "Thunder", "Wild", "Dark", "Gold", "Stone", "Sky", "Sea", "Fire",
    "Winter", "Raven", "Wolf", "Glass", "Ash", "Dawn", "Dusk", "Rune"
)
SERIES_TAILS = (
    "fall", "born", "light", "gate", "forge", "watch", "heart", "fire", "wind", "crown", "ward",
    "hold", "reach", "spire", "shade", "keep", "song", "bound", "rise", "vale"
)
SERIES_NOUNS = (
    "Chronicles", "Saga", "Files", "Legacy", "Cycle", "Legends", "Tales", "Diaries", "Quest",
    "Archives", "Mysteries", "Adventures", "Wars", "Protocol", "Club", "Odyssey"
)
ROMAN_NUMERALS = ("I", "II", "III", "IV", "V", "VI", "VII", "VIII")
ORDINALS = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth")
# fmt: on


def title_vocabulary() -> tuple[list[str], ...]:
    """Word lists for the six parts of a title: "The Silent Harbor of the North: Burning Crown"."""
    nouns = [*TITLE_NOUNS, *GENRE_WORDS["nouns"]]
    adjectives = list(TITLE_ADJECTIVES)
    return ["The"], adjectives, nouns, [f"of {p}" for p in OF_PLACES], adjectives, nouns
