"""Common given names across the languages chatbot users write in.

Used only where a cue is weak ("this is …", "for …", a sign-off): a capitalised word after such a
cue counts as a name when it is one of these, or when a second capitalised word follows it.
"""

from __future__ import annotations

from typing import Final

FIRST_NAMES: Final = frozenset(str.split("""
aaron abdul abdullah abigail adam adrian ahmed aisha alan albert alberto alejandro alex alexander
alexandra alexis ali alice alicia alina alison amanda amelia amir amit amy ana anand andrea andreas
andrew andy angela anil anita anjali ann anna anne annie anthony antoine antonio anya arjun arun
ashley aya barbara beatriz ben benjamin bernard beth betty bianca bill bob brandon brenda brian
bruno caitlin camille carla carlos carmen carol caroline catherine charles charlie charlotte chen
chloe chris christian christina christine christopher claire clara claudia colin connor daniel
daniela danielle david deborah deepak denise dennis diana diego dimitri dmitri donald donna dorothy
dylan ed edward elena eli elif elizabeth ella ellen emily emma enrique eric erik ethan eva evan
fatima felipe felix fernando fiona florian francesca francesco francisco frank fred gabriel gabriela
gareth gary george georgia gerald giovanni giulia grace greg gregory hannah hans harry harold
heather helen helena henry hiroshi hugo ian igor isaac isabel isabella ivan jack jacob james jamie
jan jane janet jason javier jean jeff jeffrey jennifer jenny jeremy jerry jessica jim joan joe john
johnny jonathan jordan jorge jose joseph josh joshua joyce juan judith julia julian julie justin
karen karl kate katherine kathleen kathy katie kavya keith kelly ken kenji kevin kim kimberly klaus
kumar kyle lara laura lauren leah lena leo leon li liam lily linda lisa liu lucas lucia lucy luis
luisa luke madison maria mariam marie marina mario mark marta martha martin mary mateo matt matthew
maya megan mehmet melissa mia michael michelle miguel mike ming mohammed muhammad nadia naomi
natalia natalie nathan neha nicholas nick nicole nikhil nina noah nora olga oliver olivia omar oscar
pablo pamela paolo patricia patrick paul paula pedro peter philip pierre pooja priya rachel rahul
raj rajesh ralph ramesh raquel raul rebecca ricardo richard rita robert roberto robin rohan ronald
rosa ross ruby ruth ryan sahil sam samantha samuel sandra sara sarah scott sean sergio shanti sharon
shirley simon sofia sophia sophie stefan stephanie stephen steve steven sunil susan suresh tanya
taylor teresa thomas tim timothy tom tony tyler valentina vanessa victor victoria vikram vincent
virginia wei wendy william xavier yan yuki yusuf zach zara zoe
"""))
