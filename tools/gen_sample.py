#!/usr/bin/env python3
"""Writes the project's small sample NLU corpus (data/sample) from templates.

Same layout as SNIPS (DESIGN.md section 8): {train,valid,test}/{seq.in,seq.out,label}.
Python 3 standard library only; a fixed seed, so running it again gives the same bytes.

    python3 tools/gen_sample.py            # writes data/sample next to this tools/ folder
    python3 tools/gen_sample.py -o DIR     # writes DIR/{train,valid,test}
"""

import argparse
import os
import random
import sys

SEED = 20240611
SIZES = (("train", 1500), ("valid", 200), ("test", 200))

# Slot values. Several are multi-word so that I- labels are common.
VALUES = {
    "city": [
        "paris", "london", "berlin", "tokyo", "new york", "san francisco", "los angeles",
        "rio de janeiro", "buenos aires", "cape town", "hong kong", "mexico city", "oslo",
        "madrid", "rome", "chicago", "seattle", "boston", "salt lake city", "kuala lumpur",
        "tel aviv", "st petersburg", "lisbon", "vienna", "nairobi", "lima", "dublin",
    ],
    "date": [
        "today", "tomorrow", "tonight", "this weekend", "next week", "on monday",
        "on friday", "next tuesday", "the day after tomorrow", "on june 3rd", "in two days",
        "this saturday", "on christmas eve", "next month", "on the 14th", "sunday",
    ],
    "time": [
        "7 am", "8 pm", "noon", "midnight", "6:30", "half past six", "9 in the morning",
        "quarter to eight", "10 pm", "5:45 am", "in the evening", "at dawn", "19:00",
        "around lunchtime", "two o'clock",
    ],
    "cuisine": [
        "italian", "thai", "sushi", "mexican", "indian", "vegan", "french", "korean bbq",
        "dim sum", "greek", "middle eastern", "seafood", "ethiopian", "tapas", "ramen",
    ],
    "party_size": [
        "two", "three", "four", "five", "six", "2", "4", "8", "ten", "twelve", "a dozen",
        "two people", "four people", "my whole family",
    ],
    "condition": [
        "rain", "snow", "sunny", "windy", "foggy", "cold", "hot", "a thunderstorm", "humid",
        "freezing", "cloudy", "hail",
    ],
    "artist": [
        "the beatles", "taylor swift", "miles davis", "daft punk", "nina simone", "radiohead",
        "the rolling stones", "bob marley", "lady gaga", "kendrick lamar", "edith piaf",
        "queen", "fleetwood mac", "aretha franklin", "the weeknd", "sigur ros", "bjork",
    ],
    "song": [
        "yesterday", "bohemian rhapsody", "hey jude", "get lucky", "feeling good",
        "paint it black", "no woman no cry", "shake it off", "la vie en rose", "creep",
        "dreams", "respect", "blinding lights", "so what", "one more time", "karma police",
    ],
    "service": [
        "spotify", "google music", "youtube", "deezer", "apple music", "pandora",
        "sound cloud", "the radio",
    ],
    "genre": [
        "jazz", "rock", "hip hop", "classical", "techno", "blues", "country", "reggae",
        "k pop", "bossa nova", "punk", "soul", "lo fi",
    ],
    "airline": [
        "delta", "lufthansa", "air france", "united", "klm", "british airways", "emirates",
        "ryanair", "qantas", "japan airlines",
    ],
    "alarm_name": [
        "work", "gym", "school run", "medication", "meeting", "wake up", "yoga", "bus",
        "dentist appointment", "laundry",
    ],
}

# Templates: literal words and {slot} or {slot:value_list} placeholders. The label of a
# placeholder is its slot name (so {from_city:city} draws a city and tags it from_city).
TEMPLATES = {
    "book_restaurant": [
        "book a table for {party_size} at a {cuisine} restaurant",
        "book a table for {party_size} at a {cuisine} place in {city} {date}",
        "i want to reserve a {cuisine} restaurant for {party_size} {date} at {time}",
        "reserve a table {date} at {time} for {party_size}",
        "find me a {cuisine} restaurant in {city} for {party_size}",
        "can you book {cuisine} for {party_size} at {time}",
        "make a dinner reservation for {party_size} in {city}",
        "get us a table at a {cuisine} spot {date}",
        "i need a reservation at a {cuisine} restaurant near {city} at {time}",
        "please book a {cuisine} restaurant for {party_size} {date}",
        "table for {party_size} {date} please",
        "reserve {cuisine} in {city} for {party_size} at {time} {date}",
    ],
    "get_weather": [
        "what is the weather in {city}",
        "what is the weather in {city} {date}",
        "will it {condition:weather_verb} in {city} {date}",
        "is it going to be {condition} in {city} {date}",
        "how {condition} will it be {date} in {city}",
        "weather forecast for {city}",
        "tell me the forecast for {date} in {city}",
        "do i need an umbrella in {city} {date}",
        "will there be {condition} {date}",
        "what will the weather be like at {time} {date}",
        "is it {condition} in {city} right now",
        "check the weather for {city} at {time}",
    ],
    "play_music": [
        "play {song} by {artist}",
        "play some {artist}",
        "play {genre} music on {service}",
        "put on {song}",
        "i want to hear {artist} on {service}",
        "play something by {artist}",
        "start my {genre} playlist",
        "can you play {song} on {service}",
        "play the song {song}",
        "listen to {genre} from {artist}",
        "play {artist} {song} on {service}",
        "shuffle some {genre}",
    ],
    "set_alarm": [
        "set an alarm for {time}",
        "set an alarm for {time} {date}",
        "wake me up at {time}",
        "wake me up {date} at {time}",
        "set a {alarm_name} alarm for {time}",
        "create an alarm called {alarm_name} at {time} {date}",
        "remind me at {time} with an alarm",
        "i need an alarm at {time} for {alarm_name}",
        "alarm for {time} please",
        "set my {alarm_name} alarm {date} for {time}",
        "add an alarm at {time}",
    ],
    "find_flight": [
        "find a flight from {from_city:city} to {to_city:city}",
        "find me a flight from {from_city:city} to {to_city:city} {date}",
        "book a flight to {to_city:city} {date}",
        "i need to fly from {from_city:city} to {to_city:city} on {airline}",
        "are there {airline} flights to {to_city:city}",
        "show me flights from {from_city:city} to {to_city:city} leaving at {time}",
        "cheapest flight to {to_city:city} {date}",
        "get me a ticket from {from_city:city} to {to_city:city}",
        "what flights go to {to_city:city} from {from_city:city} {date}",
        "fly me to {to_city:city} with {airline} {date} at {time}",
        "any flights out of {from_city:city} {date}",
    ],
}

# Values that only valid and test sentences use, so that those splits hold out-of-vocabulary
# names as SNIPS does (and <unk> and the character features have something to do).
HELD_OUT = {
    "city": ["reykjavik", "ouagadougou", "ho chi minh city"],
    "artist": ["king crimson", "ali farka toure"],
    "song": ["kashmir", "smells like teen spirit"],
    "cuisine": ["peruvian", "georgian"],
    "airline": ["aeromexico"],
}

# The verb form of a condition for "will it ... in"; tagged as condition.
VALUES["weather_verb"] = ["rain", "snow", "hail", "be windy", "be sunny", "freeze", "storm"]


def expand(template, rng, values):
    """Returns (tokens, labels) for one instance of a template."""
    tokens, labels = [], []
    for piece in template.split():
        if piece.startswith("{") and piece.endswith("}"):
            name = piece[1:-1]
            slot, _, source = name.partition(":")
            value = rng.choice(values[source or slot]).split()
            tokens.extend(value)
            labels.append("B-" + slot)
            labels.extend("I-" + slot for _ in value[1:])
        else:
            tokens.append(piece)
            labels.append("O")
    return tokens, labels


def generate(rng, total, values, seen):
    """Distinct sentences (across calls sharing seen), so no test sentence is also in train."""
    rows = []
    intents = sorted(TEMPLATES)
    attempts = 0
    while len(rows) < total:
        attempts += 1
        if attempts > total * 1000:
            sys.exit("gen_sample: the templates cannot give %d distinct sentences" % total)
        # Round robin, retrying the same intent after a duplicate, keeps the intents balanced.
        intent = intents[len(rows) % len(intents)]
        tokens, labels = expand(rng.choice(TEMPLATES[intent]), rng, values)
        key = " ".join(tokens)
        if key in seen:
            continue
        seen.add(key)
        rows.append((tokens, labels, intent))
    return rows


def write_split(folder, rows):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "seq.in"), "w", encoding="utf-8", newline="\n") as f_in, \
         open(os.path.join(folder, "seq.out"), "w", encoding="utf-8", newline="\n") as f_out, \
         open(os.path.join(folder, "label"), "w", encoding="utf-8", newline="\n") as f_lab:
        for tokens, labels, intent in rows:
            assert len(tokens) == len(labels)
            f_in.write(" ".join(tokens) + "\n")
            f_out.write(" ".join(labels) + "\n")
            f_lab.write(intent + "\n")


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--out", default=os.path.join(here, "..", "data", "sample"),
                    help="output folder (default: data/sample of this repository)")
    args = ap.parse_args()
    rng = random.Random(SEED)
    seen = set()
    eval_values = {k: v + HELD_OUT.get(k, []) for k, v in VALUES.items()}
    total = 0
    for name, n in SIZES:
        rows = generate(rng, n, VALUES if name == "train" else eval_values, seen)
        rng.shuffle(rows)
        write_split(os.path.join(args.out, name), rows)
        total += n
    print("gen_sample: wrote %d sentences to %s" % (total, os.path.normpath(args.out)))


if __name__ == "__main__":
    main()
